import sys

from captcha_ocr.cli import main

sys.exit(main())
