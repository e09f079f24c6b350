"""The OPC UA probe: an instrument's own OPC UA server (a LADS device, say) read once per poll."""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote, urlsplit

from asyncua import ua
from asyncua.client.client import Client as OpcUaClient
from asyncua.client.ua_client import UaClientState
from asyncua.crypto.security_policies import (
    SecurityPolicy,
    SecurityPolicyAes128Sha256RsaOaep,
    SecurityPolicyAes256Sha256RsaPss,
    SecurityPolicyBasic256Sha256,
    SecurityPolicyNone,
)
from asyncua.sync import ThreadLoop
from asyncua.ua.status_codes import get_name_and_doc
from asyncua.ua.uaerrors import UaError, UaStatusCodeError
from cryptography import x509

from gateway.errors import ProbeError
from gateway.opcua_credentials import read_security
from gateway.probes import Reading, connect_failure
from instrushare.protocol import IDENTIFIER_RE, State

MACHINERY_ITEM_STATES: Mapping[str, State] = {
    "0": State.OFF, "NotAvailable": State.OFF,
    "1": State.FAULT, "OutOfService": State.FAULT,
    "2": State.IDLE, "NotExecuting": State.IDLE,
    "3": State.RUNNING, "Executing": State.RUNNING,
}
"""OPC UA for Machinery's MachineryItemState (OPC 40001-1), which LADS devices (OPC 30500)
report: a state's StateNumber, or its name as the CurrentState text -> protocol state."""


def _policy_name(policy_uri: str) -> str:
    """A security policy's name, the end of its URI (``...SecurityPolicy#Basic256Sha256``)."""
    return policy_uri.rpartition("#")[2]


SECURITY_POLICIES: Mapping[str, type[SecurityPolicy]] = {
    _policy_name(policy.URI): policy
    for policy in (SecurityPolicyNone, SecurityPolicyBasic256Sha256,
                   SecurityPolicyAes128Sha256RsaOaep, SecurityPolicyAes256Sha256RsaPss)
}
"""The security policies a probe may use, by name; the older ones that hash with SHA-1
(Basic128Rsa15, Basic256) are deprecated by OPC UA and left out."""
SECURITY_MODES: Mapping[str, ua.MessageSecurityMode] = {
    mode.name: mode for mode in (ua.MessageSecurityMode.Sign, ua.MessageSecurityMode.SignAndEncrypt)
}

_T = TypeVar("_T")
_ASYNCUA_LOG = logging.getLogger("asyncua")


def node_id(text: str) -> ua.NodeId:
    """Parse a NodeId written like ``ns=2;s=Instrument.State`` or, with the namespace by URI,
    ``nsu=urn:vendor:hplc;s=Pump.State`` (an ExpandedNodeId, resolved by OpcUaProbe on each
    connect); ValueError if it is not one."""
    try:
        parsed = ua.NodeId.from_string(text)
    except UaError as exc:
        raise ValueError(f"{text!r} is not an OPC UA NodeId (such as ns=2;s=Instrument.State "
                         "or nsu=urn:vendor:hplc;i=6013)") from exc
    if isinstance(parsed, ua.ExpandedNodeId) and (
        parsed.ServerIndex or parsed.NamespaceIndex or not parsed.NamespaceUri
    ):  # asyncua accepts ns= with nsu=, an empty nsu= and srv= (a node of another server)
        raise ValueError(f"{text!r}: give the namespace either by index (ns=2;...) "
                         "or by URI (nsu=<URI>;...)")
    return parsed


def _one_of(key: str, name: str, choices: Mapping[str, _T]) -> _T:
    if name not in choices:
        raise ValueError(f"{key} must be one of {', '.join(choices)}, not {name!r}")
    return choices[name]


def _security_name(endpoint: ua.EndpointDescription) -> str:
    """How an endpoint's security is written in the configuration: ``None`` or policy and
    mode, such as ``Basic256Sha256 SignAndEncrypt``."""
    policy = _policy_name(endpoint.SecurityPolicyUri)
    mode = endpoint.SecurityMode
    return policy if mode is ua.MessageSecurityMode.None_ else f"{policy} {mode.name}"


def _namespace_uri(node: ua.NodeId) -> str | None:
    """The URI of a NodeId written with nsu=, whose ';' and '%' are written %3B and %25."""
    if isinstance(node, ua.ExpandedNodeId) and node.NamespaceUri:
        return unquote(node.NamespaceUri)
    return None


class OpcUaProbe:
    """An instrument's own OPC UA server, such as a LADS device: state, power, user and
    metrics read from its variables, all in one Read request per poll.

    The state node's value, as text (``3``, ``Executing``, ``true``), is looked up in
    ``states`` (MACHINERY_ITEM_STATES by default). Power is multiplied by ``scale``. The user
    node's text is the user id when it is a valid platform id. A value that is not Good, not a
    number where one is needed or not in ``states`` fails the read rather than be guessed at.
    asyncua is asynchronous, so the probe runs it on an event loop thread of its own. The
    connection is reopened on the next read after any failure, so a server that comes back is
    used again without a restart.

    A NodeId may give its namespace by URI (``nsu=``): the server's namespace array is read
    on each connect to find the URI's index, since a server may number its namespaces
    differently after a restart. Messages show NodeIds as configured.

    With a ``security_policy`` other than ``None`` (see SECURITY_POLICIES), messages are signed
    and, in ``security_mode`` SignAndEncrypt (the default), encrypted, with the gateway's
    ``certificate`` and ``private_key``, read once when the probe is made. Before each connect
    the server is asked for its endpoints, so that a server not offering the security asked
    for fails the read naming what it does offer (asyncua's own error says less). The
    endpoint's certificate is taken as the server's unless ``server_certificate`` is given,
    which it must then equal.
    """

    def __init__(
        self,
        *,
        endpoint: str,
        state_node: str | None = None,
        states: Mapping[str, State] | None = None,
        power_node: str | None = None,
        scale: float = 1.0,
        user_node: str | None = None,
        metrics: Mapping[str, str] | None = None,
        username: str | None = None,
        password: str | None = None,
        security_policy: str = "None",
        security_mode: str | None = None,
        certificate: Path | None = None,
        private_key: Path | None = None,
        server_certificate: Path | None = None,
        timeout_s: float = 2.0,
    ) -> None:
        if state_node is None and power_node is None:
            raise ValueError("an OPC UA probe needs state_node or power_node")
        self._policy = _one_of("security_policy", security_policy, SECURITY_POLICIES)
        self._mode = (ua.MessageSecurityMode.None_ if self._policy is SecurityPolicyNone
                      else _one_of("security_mode", security_mode or "SignAndEncrypt",
                                   SECURITY_MODES))
        self._credentials = read_security(
            security_policy, mode=security_mode, certificate=certificate,
            private_key=private_key, server_certificate=server_certificate)
        self.endpoint = endpoint
        self.state_node = state_node
        self.states = dict(MACHINERY_ITEM_STATES if states is None else states)
        self.power_node = power_node
        self.scale = scale
        self.user_node = user_node
        self.metrics = dict(metrics or {})
        self.username = username
        self._password = password
        self.certificate = certificate
        self.server_certificate = server_certificate
        self.timeout_s = timeout_s
        self._nodes = {text: node_id(text) for text in (state_node, power_node, user_node,
                                                        *self.metrics.values()) if text is not None}
        """The nodes to read, keyed by NodeId as configured: ua.NodeId's equality ignores the
        URI, so two nsu= NodeIds differing only in it would be one key."""
        self._resolved: list[ua.NodeId] = []
        """The nodes' NodeIds on the current connection, URIs replaced by indexes."""
        self._loop: ThreadLoop | None = None
        self._client: OpcUaClient | None = None
        self._session_timeout_ms: int | None = None
        """What the server granted last: asked for again, the library has no revision to
        warn of at each reconnect (a node that fails reconnects at every poll)."""
        self._lock = threading.Lock()
        if _ASYNCUA_LOG.level == logging.NOTSET:  # unless configured: it logs each read at INFO
            _ASYNCUA_LOG.setLevel(logging.WARNING)

    def __repr__(self) -> str:
        where = urlsplit(self.endpoint).netloc.rpartition("@")[2]  # a password in it stays out
        return f"OpcUaProbe({where})"

    def read(self) -> Reading:
        with self._lock:
            if self._loop is None:
                self._loop = ThreadLoop(timeout=None)  # asyncua's requests time out themselves
                self._loop.daemon = True  # a probe never closed must not keep the process alive
                self._loop.start()
            results = self._loop.post(self._read_nodes())
        values = {text: self._good(text, result)
                  for text, result in zip(self._nodes, results, strict=True)}
        power = None if self.power_node is None else self._number(self.power_node, values)
        user = None if self.user_node is None else values[self.user_node]
        return Reading(
            state=None if self.state_node is None else self._state(values),
            power_w=None if power is None else max(0.0, power * self.scale),
            user=user if isinstance(user, str) and IDENTIFIER_RE.fullmatch(user) else None,
            metrics={name: self._number(node, values) for name, node in self.metrics.items()},
        )

    def close(self) -> None:
        with self._lock:
            loop, self._loop = self._loop, None
            if loop is not None:
                try:
                    loop.post(self._disconnect())
                finally:
                    loop.stop()

    async def _read_nodes(self) -> list[ua.DataValue]:
        try:
            if self._client is not None and self._client.state is not UaClientState.CONNECTED:
                await self._disconnect()  # lost since the last read: connect again right away
            if self._client is None:
                self._client = await self._connect()
                self._resolved = await self._resolve(self._client)
            client = self._client
            return await client.read_attributes([client.get_node(n) for n in self._resolved])
        except ProbeError:
            await self._disconnect()  # the next read connects and resolves again
            raise
        except (ConnectionError, socket.gaierror) as exc:  # said as the other probes say it
            await self._disconnect()
            why = connect_failure(exc, self.timeout_s, "the instrument's OPC UA server")
            raise ProbeError(f"{self!r}: cannot connect: {why}") from exc
        except Exception as exc:  # not only UaError: asyncua raises plain ones too
            await self._disconnect()
            raise ProbeError(f"{self!r}: {str(exc) or type(exc).__name__}") from exc

    async def _connect(self) -> OpcUaClient:
        client = OpcUaClient(self.endpoint, timeout=self.timeout_s)
        if self._session_timeout_ms is not None:
            client.session_timeout = self._session_timeout_ms
        if self.username is not None:
            client.set_user(self.username)
        if self._password is not None:
            client.set_password(self._password)
        endpoint = self._offered(await client.connect_and_get_server_endpoints())
        if self._credentials is not None:
            client.application_uri = self._credentials.application_uri
            await client.set_security(
                self._policy, self._credentials.certificate, self._credentials.private_key,
                server_certificate=self._server_certificate(endpoint), mode=self._mode)
        try:
            await client.connect()
        except UaStatusCodeError as exc:
            name, doc = get_name_and_doc(exc.code)
            if self._credentials is None or not name.startswith(("BadCertificate", "BadSecurity")):
                raise
            raise ProbeError(f"{self!r}: the server refused the connection secured with "
                             f"{self.certificate}: {name} ({doc})") from exc
        self._session_timeout_ms = client.session_timeout
        return client

    def _offered(self, endpoints: Sequence[ua.EndpointDescription]) -> ua.EndpointDescription:
        """The server's endpoint with the configured security; a ProbeError naming the ones
        it offers if there is none."""
        for endpoint in endpoints:
            if (endpoint.SecurityPolicyUri, endpoint.SecurityMode) == (self._policy.URI,
                                                                       self._mode):
                return endpoint
        wanted = _security_name(ua.EndpointDescription(SecurityPolicyUri=self._policy.URI,
                                                       SecurityMode=self._mode))
        offered = ", ".join(sorted({_security_name(endpoint) for endpoint in endpoints}))
        raise ProbeError(f"{self!r}: the server does not offer security {wanted}, only "
                         f"{offered or 'nothing'}: see security_policy and security_mode")

    def _server_certificate(self, endpoint: ua.EndpointDescription) -> bytes:
        """The server's certificate (DER) to secure the connection with: the endpoint's,
        unless another one is pinned."""
        assert self._credentials is not None
        sent: bytes = endpoint.ServerCertificate
        pinned = self._credentials.server_certificate
        if pinned is not None and pinned != x509.load_der_x509_certificate(sent):
            raise ProbeError(f"{self!r}: the server's certificate is not the one in "
                             f"server_certificate ({self.server_certificate})")
        return sent

    async def _resolve(self, client: OpcUaClient) -> list[ua.NodeId]:
        """The nodes' NodeIds with each namespace URI replaced by the server's current index,
        from one read of its namespace array (none when no NodeId gives a URI)."""
        uris = [_namespace_uri(node) for node in self._nodes.values()]
        namespaces = await client.get_namespace_array() if any(uris) else []
        resolved = []
        for (text, node), uri in zip(self._nodes.items(), uris, strict=True):
            if uri is not None:
                if uri not in namespaces:
                    raise ProbeError(f"{self!r}: {text}: the server has no namespace {uri!r}")
                node = ua.NodeId(node.Identifier, ua.Int16(namespaces.index(uri)), node.NodeIdType)
            resolved.append(node)
        return resolved

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # the server may be gone already
                await client.disconnect()

    def _good(self, node: str, result: ua.DataValue) -> object:
        status = result.StatusCode  # absent means Good
        if status is not None and not status.is_good():
            raise ProbeError(f"{self!r}: {node}: {status.name}")
        return None if result.Value is None else result.Value.Value

    def _state(self, values: Mapping[str, object]) -> State:
        assert self.state_node is not None
        value = values[self.state_node]
        if isinstance(value, bool):
            text: str | None = "true" if value else "false"
        elif isinstance(value, int):
            text = str(int(value))
        elif isinstance(value, ua.LocalizedText):
            text = value.Text
        else:
            text = value if isinstance(value, str) else None
        state = None if text is None else self.states.get(text)
        if state is None:
            shown = value if text is None else text
            raise ProbeError(f"{self!r}: {self.state_node} reads {shown!r}, "
                             "a value not in states")
        return state

    def _number(self, node: str, values: Mapping[str, object]) -> float:
        value = values[node]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ProbeError(f"{self!r}: {node} reads {value!r}, not a number")
        if not math.isfinite(value):
            raise ProbeError(f"{self!r}: {node} reads {value}")
        return float(value)
