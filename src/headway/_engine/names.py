"""Readable flow-run names: ``adjective-noun`` (``amber-heron``)."""

from __future__ import annotations

import os

_ADJECTIVES = (
    "amber", "ancient", "brave", "breezy", "bright", "calm", "clever", "cobalt", "crimson",
    "curious", "daring", "dusky", "eager", "electric", "emerald", "fearless", "gentle",
    "golden", "graceful", "hidden", "humble", "icy", "jolly", "keen", "lively", "lucky",
    "merry", "misty", "nimble", "noble", "patient", "polar", "quick", "quiet", "rapid",
    "restless", "rustic", "sandy", "scarlet", "silent", "silver", "snowy", "spry", "steady",
    "stormy", "sunny", "swift", "tidal", "tranquil", "vivid", "wandering", "witty", "zesty",
)  # fmt: skip

_NOUNS = (
    "albatross", "badger", "beacon", "bison", "canyon", "cedar", "comet", "condor", "coral",
    "cricket", "delta", "dolphin", "ember", "falcon", "fjord", "fox", "gazelle", "glacier",
    "harbor", "hawk", "heron", "ibis", "jaguar", "kestrel", "lagoon", "lark", "lynx",
    "magpie", "marmot", "meadow", "meteor", "moose", "nebula", "ocelot", "orca", "osprey",
    "otter", "panda", "pelican", "pine", "quail", "raven", "reef", "river", "salmon",
    "sparrow", "summit", "tern", "thrush", "tiger", "tundra", "walrus", "willow", "wren",
)  # fmt: skip


def generate_name() -> str:
    """A random ``adjective-noun`` name (not unique: ids are)."""
    raw = int.from_bytes(os.urandom(4), "big")
    adjective = _ADJECTIVES[raw % len(_ADJECTIVES)]
    noun = _NOUNS[(raw // len(_ADJECTIVES)) % len(_NOUNS)]
    return f"{adjective}-{noun}"
