"""symblctl: client library and command line for the symbld daemon."""
