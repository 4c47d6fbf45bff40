"""The Q-Insight teacher: GRPO training, reasoning-text triplets (model or template), RACT.

Importing this package (or triplets/template/rewards/prompts/config) loads no torch, transformers
or trl; the modules that need them import them inside their functions.
"""
