"""The commands, one module each; they share cli.options and never import each other."""
