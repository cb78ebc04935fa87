"""``python -m uniham.cli ...``"""
import sys

from uniham.cli import main

sys.exit(main())
