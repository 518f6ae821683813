"""The application: configuration, answer composition, the command line and the chat and web front-ends."""

import warnings

# jieba (and milvus-lite) import pkg_resources while it exists; setuptools < 81 is kept installed for
# milvus-lite 2.5.1, whose deprecation warning would otherwise precede every answer on stderr. Set by
# the application, not the engine (a library leaves process-wide settings to its user), and before
# any of its modules imports jieba.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
