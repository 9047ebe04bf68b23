"""The channel IR: channel ids per tensor position, the channel graph, parametrised weights.

Nothing here knows about operators, passes or the pipeline; every layer above builds on it.
"""

from .channel_graph import ChannelRecord, Freeze, Space, connected_components, unique_ints
from .layout import OPAQUE, Block, Layout, dims_of_reshape, reshape_layout

__all__ = ["ChannelRecord", "Freeze", "Space", "connected_components", "unique_ints", "OPAQUE", "Block", "Layout",
           "dims_of_reshape", "reshape_layout"]
