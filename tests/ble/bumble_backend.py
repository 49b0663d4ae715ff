"""A small bleak backend over Bumble's in-process virtual radio (``bumble.link.LocalLink``).

The project's real ``BleakClient`` / ``BleakScanner`` code (and ``bleak-retry-connector``) runs
unchanged on top of it; only the OS layer is replaced::

    BleakScanner(..., backend=BumbleLinkScanner)
    BleakClient(device, backend=BumbleLinkClient)

All devices (simulated sensors and every central created here) share one process-wide
:class:`~bumble.link.LocalLink`, the "air"; :func:`reset_link` gives each test fresh air.

Fidelity notes (see ``docs/ble.md``): notifications are delivered instantly and never lost, there
is no 31-byte advertising limit (the simulators assert it themselves), and a connect request to an
address nobody advertises stays pending forever (so :meth:`BumbleLinkClient.connect` enforces its
own timeout and throws the virtual controller away, raising :class:`TimeoutError` like the BlueZ
backend does).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
from typing import Any

from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError
from bumble.controller import Controller
from bumble.core import AdvertisingData
from bumble.device import Advertisement, Connection, Device, Peer
from bumble.gatt_client import CharacteristicProxy, DescriptorProxy, ServiceProxy
from bumble.hci import Address
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

log = logging.getLogger(__name__)

__all__ = [
    "BumbleLinkClient",
    "BumbleLinkScanner",
    "get_link",
    "make_device",
    "remove_device",
    "reset_link",
]

_link: LocalLink | None = None
_addresses = itertools.count(1)

#: MTU the central asks for (what BlueZ / CoreBluetooth typically ask for)
CLIENT_MTU = 247


def get_link() -> LocalLink:
    """The process-wide virtual air (created on first use)."""
    global _link  # noqa: PLW0603
    if _link is None:
        _link = LocalLink()
    return _link


def reset_link() -> LocalLink:
    """Throw the air away and start a new one (one per test)."""
    global _link  # noqa: PLW0603
    _link = LocalLink()
    return _link


def make_device(name: str, address: str | None = None) -> Device:
    """A Bumble host + virtual controller on the shared link (not powered on yet)."""
    if address is None:
        n = next(_addresses)
        address = f"C0:00:00:00:{(n >> 8) & 0xFF:02X}:{n & 0xFF:02X}"
    ctrl = Controller(name, link=get_link(), public_address=address)
    host = Host(ctrl, AsyncPipeSink(ctrl))  # type: ignore[no-untyped-call]
    return Device(name=name, address=Address(address), host=host)


def remove_device(device: Device) -> None:
    """Take a device's controller off the air (it can no longer be seen or send anything)."""
    ctrl = device.host.controller
    link = getattr(ctrl, "link", None)
    if link is not None and ctrl in link.controllers:
        link.remove_controller(ctrl)


def _addr_str(address: Address) -> str:
    """``F0:F1:F2:F3:F4:F5`` without Bumble's ``/P`` suffix."""
    return str(address).split("/")[0].upper()


def _uuid_str(uuid: Any) -> str:
    """Bumble UUID (16, 32 or 128 bit) -> bleak's lower-case 128-bit string."""
    h = bytes(reversed(uuid.uuid_128_bytes)).hex()
    return f"{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class BumbleLinkScanner(BaseBleakScanner):
    """bleak scanner backend: a Bumble central scanning the shared link."""

    def __init__(
        self,
        detection_callback: Any,
        service_uuids: list[str] | None,
        scanning_mode: str = "active",
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._device: Device | None = None
        self._names: dict[str, str] = {}

    async def start(self) -> None:
        self.seen_devices = {}
        self._device = make_device("bleak-scanner")
        self._device.on("advertisement", self._on_advertisement)
        await self._device.power_on()
        await self._device.start_scanning(filter_duplicates=False)

    async def stop(self) -> None:
        dev, self._device = self._device, None
        if dev is None:
            return
        with contextlib.suppress(Exception):
            await dev.stop_scanning()
        remove_device(dev)

    def _on_advertisement(self, adv: Advertisement) -> None:
        data = adv.data
        address = _addr_str(adv.address)
        uuids: list[str] = []
        for kind in (
            AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
            AdvertisingData.INCOMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
            AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
            AdvertisingData.INCOMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
        ):
            for u in data.get_all(kind) or []:
                for item in u if isinstance(u, list) else [u]:
                    uuids.append(_uuid_str(item))
        name = data.get(AdvertisingData.COMPLETE_LOCAL_NAME) or data.get(
            AdvertisingData.SHORTENED_LOCAL_NAME
        )
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        if name:
            self._names[address] = str(name)
        name = self._names.get(address)
        previous = self.seen_devices.get(address)
        if previous is not None and not uuids:
            uuids = list(previous[1].service_uuids)  # scan response: keep the advertised UUIDs
        if not self.is_allowed_uuid(uuids):
            return
        manufacturer: dict[int, bytes] = {}
        for item in data.get_all(AdvertisingData.MANUFACTURER_SPECIFIC_DATA) or []:
            company, payload = item
            manufacturer[int(company)] = bytes(payload)
        ad = AdvertisementData(
            local_name=name,
            manufacturer_data=manufacturer,
            service_data={},
            service_uuids=uuids,
            tx_power=None,
            rssi=int(adv.rssi),
            platform_data=(adv,),
        )
        device = self.create_or_update_device(address, address, name, adv.address, ad)
        self.call_detection_callbacks(device, ad)


class BumbleLinkClient(BaseBleakClient):
    """bleak client backend: a fresh Bumble central per connection, on the shared link.

    Extra keyword arguments (forwarded by ``BleakClient(..., mtu=...)``): ``mtu`` (int) is the
    ATT MTU the central asks for (default 247).
    """

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        disconnected_callback: Callable[[], None] | None = None,
        timeout: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout
        )
        self._name = (
            address_or_ble_device.name
            if isinstance(address_or_ble_device, BLEDevice) and address_or_ble_device.name
            else str(self.address)
        )
        self._mtu_request = int(kwargs.get("mtu", CLIENT_MTU))
        self._device: Device | None = None
        self._connection: Connection | None = None
        self._peer: Peer | None = None
        self._mtu = 23
        self._closing = False
        self._chars: dict[int, CharacteristicProxy[Any]] = {}
        self._descs: dict[int, DescriptorProxy] = {}
        self._subscribers: dict[int, Callable[[bytes], None]] = {}

    @property
    def name(self) -> str:
        return self._name

    @property
    def mtu_size(self) -> int:
        return self._mtu

    @property
    def is_connected(self) -> bool:
        return self._connection is not None

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        timeout = float(kwargs.get("timeout", self._timeout))
        self._closing = False
        device = make_device("bleak-central")
        self._device = device
        await device.power_on()
        # Bumble's connect never returns if nobody advertises and ignores a cancel: run it as a
        # task, and on timeout abandon it together with its virtual controller.
        task = asyncio.ensure_future(device.connect(self.address, timeout=None))
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            task.cancel()
            remove_device(device)
            self._device = None
            raise TimeoutError(f"connect to {self.address} timed out after {timeout} s")
        try:
            connection = task.result()
        except Exception as exc:
            remove_device(device)
            self._device = None
            raise BleakError(f"connect to {self.address} failed: {exc}") from exc
        self._connection = connection
        connection.on("disconnection", self._on_disconnection)
        try:
            await asyncio.wait_for(self._discover(connection), timeout)
        except Exception:
            await self.disconnect()
            raise

    async def _discover(self, connection: Connection) -> None:
        peer = Peer(connection)
        self._peer = peer
        self._mtu = await peer.request_mtu(self._mtu_request)
        services = BleakGATTServiceCollection()
        for svc in await peer.discover_services():
            bsvc = BleakGATTService(svc, svc.handle, _uuid_str(svc.uuid))
            services.add_service(bsvc)
            await self._discover_characteristics(peer, svc, bsvc, services)
        self.services = services

    async def _discover_characteristics(
        self,
        peer: Peer,
        svc: ServiceProxy,
        bsvc: BleakGATTService,
        services: BleakGATTServiceCollection,
    ) -> None:
        for ch in await peer.discover_characteristics(service=svc):
            props = [
                name.lower().replace("_", "-")
                for name in (
                    "BROADCAST",
                    "READ",
                    "WRITE_WITHOUT_RESPONSE",
                    "WRITE",
                    "NOTIFY",
                    "INDICATE",
                )
                if ch.properties & getattr(type(ch.properties), name)
            ]
            bch = BleakGATTCharacteristic(
                ch,
                ch.handle,
                _uuid_str(ch.uuid),
                props,  # type: ignore[arg-type]
                lambda: self._mtu - 3,
                bsvc,
            )
            services.add_characteristic(bch)
            self._chars[ch.handle] = ch
            for d in await peer.discover_descriptors(characteristic=ch):
                bd = BleakGATTDescriptor(d, d.handle, _uuid_str(d.type), bch)
                services.add_descriptor(bd)
                self._descs[d.handle] = d

    def _on_disconnection(self, reason: int) -> None:
        connection, self._connection = self._connection, None
        device, self._device = self._device, None
        if device is not None:
            remove_device(device)
        if connection is not None and not self._closing and self._disconnected_callback:
            self._disconnected_callback()

    async def disconnect(self) -> None:
        self._closing = True
        connection = self._connection
        if connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.disconnect(), 2.0)
        self._connection = None
        device, self._device = self._device, None
        if device is not None:
            remove_device(device)

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("pairing is not simulated")

    async def unpair(self) -> None:
        raise NotImplementedError("pairing is not simulated")

    def _require(self) -> Peer:
        if self._connection is None or self._peer is None:
            raise BleakError("Not connected")
        return self._peer

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        peer = self._require()
        return bytearray(await peer.read_value(characteristic.handle))

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        peer = self._require()
        return bytearray(await peer.read_value(descriptor.handle))

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: Any, response: bool
    ) -> None:
        peer = self._require()
        await peer.write_value(characteristic.handle, bytes(data), with_response=response)

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: Any) -> None:
        peer = self._require()
        await peer.write_value(descriptor.handle, bytes(data), with_response=True)

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        peer = self._require()
        proxy = self._chars[characteristic.handle]

        def on_value(value: bytes) -> None:
            callback(bytearray(value))

        self._subscribers[characteristic.handle] = on_value
        await peer.subscribe(proxy, on_value)

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        peer = self._require()
        proxy = self._chars[characteristic.handle]
        sub = self._subscribers.pop(characteristic.handle, None)
        await peer.unsubscribe(proxy, sub)
