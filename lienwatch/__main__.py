import sys

from lienwatch.cli import main

sys.exit(main())
