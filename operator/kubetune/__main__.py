"""`python -m kubetune`: the operator (what the operator image and the chart run)."""

from kubetune.controller.main import main

if __name__ == "__main__":
    main()
