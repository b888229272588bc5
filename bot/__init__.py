"""deckhand's core: domain logic and gateways. Knows nothing of Bolt listeners or Block Kit."""
