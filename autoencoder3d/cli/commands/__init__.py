"""One module per subcommand; each defines ``add_args(parser)`` and ``main(args)``.

The module docstring's first line is the command's help; the rest is its
description. Heavy imports (Keras, TensorFlow) happen inside ``main`` so that
``--help`` is instant.
"""
