"""The application: configuration, answer composition, the command line and the chat and web front-ends."""

import warnings

# milvus-lite 2.5.1 imports pkg_resources (setuptools < 81 is kept installed for it), whose deprecation
# warning would otherwise precede every answer on stderr with the Milvus backend; jieba is imported
# without it (`embeddings.text.tokenize`). Set by the application, not the engine (a library leaves
# process-wide settings to its user).
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
