"""What a gateway tells its operator when its data stops flowing: held in the outbox (no
broker, no ingest worker online) for a while, and what to check when the platform does not
confirm what the broker took."""

from __future__ import annotations

import logging
import time

from gateway.publisher import NO_INGEST, MqttLink

logger = logging.getLogger("gateway")


class DeliveryLog:
    """Log lines about one gateway's delivery: a hold once it lasts ``quiet_s`` (a reconnect
    stays quiet), then every ``every_s``, and when delivery resumes."""

    def __init__(self, *, gateway_id: str, topic_prefix: str, protocol: str, quiet_s: float,
                 every_s: float) -> None:
        self.gateway_id = gateway_id
        self.topic_prefix = topic_prefix
        self.protocol = protocol
        self.quiet_s = quiet_s
        self.every_s = every_s
        self._held_since: float | None = None
        """Monotonic time since when data may not be published (None: it may)."""
        self._report_at = 0.0
        self._reported = False

    def hold(self, link: MqttLink, depth: int) -> None:
        """Note whether ``link`` holds data back now, with ``depth`` messages in the outbox."""
        held_by, now = link.held_by, time.monotonic()
        if held_by is None or not link.link_up:  # set_link(False): its owner's outage
            if self._reported:
                logger.info("gateway %s: delivering again after %.0f s held; %d message(s) in"
                            " the outbox", self.gateway_id, now - (self._held_since or now),
                            depth)
            self._held_since, self._reported = None, False
            return
        if self._held_since is None:
            self._held_since, self._report_at = now, now + self.quiet_s
        if now >= self._report_at:
            self._report_at = now + self.every_s
            self._reported = True
            logger.warning("gateway %s: holding data in the outbox for %.0f s (%s); %d"
                           " message(s) waiting%s", self.gateway_id, now - self._held_since,
                           held_by, depth,
                           self._check_ingest(f"read {link.topics.all_ingest_states}")
                           if held_by == NO_INGEST else "")

    def unconfirmed_hint(self) -> str:
        """Why the platform may not confirm: no ingest listening on these topics, or, under
        MQTT 3.1.1, a broker that acknowledges a message its ACL refuses as if it took it."""
        return self._check_ingest(
            'write its topics: MQTT 3.1.1 does not say when it refuses one, mqtt_protocol = "5"'
            " would" if self.protocol == "3.1.1" else None)

    def _check_ingest(self, acl: str | None) -> str:
        """What to check when no ingest worker answers: that one runs under this gateway's
        topic prefix, and (``acl``) what the broker's ACL must let this gateway do."""
        hint = f" (check that an ingest worker runs with topic_prefix {self.topic_prefix!r}"
        return hint + (f", and that the broker's ACL lets this gateway {acl})" if acl else ")")
