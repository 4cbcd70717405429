"""LiveCodeBench (livecodebench/code_generation_lite and its scenarios), scored in the sandbox."""
