import sys

from symbld.app import main

sys.exit(main())
