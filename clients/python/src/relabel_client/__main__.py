import sys

from relabel_client.cli import main

sys.exit(main())
