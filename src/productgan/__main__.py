import sys

from productgan.cli import main

sys.exit(main())
