import sys

from fastsrv.cli import main

sys.exit(main())
