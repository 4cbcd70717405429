"""Evaluation of a checkpoint on HumanEval+ and MBPP+ (prompts now; scoring lands with issue 5)."""
