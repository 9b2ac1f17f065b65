"""Growth inside other libraries' training loops.

- `growkit.integrations.hf`: Hugging Face ``transformers.Trainer`` (``pip install 'growkit[hf]'``).

Each integration is its own module, imported on demand, so ``import growkit`` never needs the library.
"""
