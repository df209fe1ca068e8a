"""Domain adaptation by optimal transport (POT's ``ot.da`` vocabulary): fitted transports between
two samples that map new points by barycentric projection."""

from ._transport import EMDTransport, SinkhornTransport

__all__ = ["EMDTransport", "SinkhornTransport"]
