import sys

from edgemm.cli import main

sys.exit(main())
