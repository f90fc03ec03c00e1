"""Sub-commands of the `jaxseq` command line; each module has `register(subparsers)`."""
