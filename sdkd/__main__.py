import sys

from sdkd.cli import main

sys.exit(main())
