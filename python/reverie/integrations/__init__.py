"""Adapters from other continual-learning libraries to Reverie's buffers.

``reverie.integrations.avalanche`` holds the Avalanche plugin (``ReveriePlugin``). Importing
``reverie`` or this package never imports Avalanche or torchvision; ``pip install
'reverie[avalanche]'`` installs them (``torchvision_ops`` says why it pins torchvision).
"""
