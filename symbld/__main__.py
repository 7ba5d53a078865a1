import sys

from symbld.daemon import main

sys.exit(main())
