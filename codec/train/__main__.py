"""`python -m codec.train [hydra overrides]` (the same as `codec train`)."""

from codec.train.entry import main

if __name__ == "__main__":
    main()
