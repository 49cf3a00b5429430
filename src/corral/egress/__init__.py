"""Default-deny egress: per-sandbox netns + nftables, an allowlisting proxy, DNS control, host/k8s export."""

from corral.egress._attachment import NetworkAttachment
from corral.egress._egress import Egress
from corral.egress._rules import ALWAYS_DENIED, ALWAYS_DENIED_NAMES, Rules, Verdict

__all__ = ["ALWAYS_DENIED", "ALWAYS_DENIED_NAMES", "Egress", "NetworkAttachment", "Rules", "Verdict"]
