"""Generation stages of the recipe: snippet -> concepts -> instruction -> response, and the judge.

Everything that decides *what text a model sees* lives in :mod:`selfalign.generation.prompts`
as pure functions of (few-shot file, input record, record index), so that a prompt can be
rebuilt and audited from an artifact alone, independently of how the requests were batched or
sharded.
"""
