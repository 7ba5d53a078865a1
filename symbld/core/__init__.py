"""The core: sessions, event numbering and history, the journal, audio sources. No sockets here."""
