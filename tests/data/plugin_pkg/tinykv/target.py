"""The TinyKV target: everything dynharness needs to test it, through ``targets.adapter`` only."""
import http.client

import aiohttp

from targets.adapter import OpFailed, OpIndeterminate, ReadResult, TargetError, WriteResult


class TinyKVAdmin:
    def health(self, node, timeout=1.0):
        conn = http.client.HTTPConnection(node.host, node.port, timeout=timeout)
        try:
            conn.request("GET", "/health")
            return conn.getresponse().status == 200, "ok"
        except OSError as e:
            return False, str(e)
        finally:
            conn.close()


class TinyKVClient:
    def __init__(self, node, url, timeout):
        self.node, self.url, self.timeout, self._http = node, url, timeout, None

    def _session(self):
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._http

    async def get(self, key, *, r=None, pr=None, timeout=None):
        try:
            async with self._session().get(f"{self.url}/kv/{key}") as resp:
                body = await resp.json()
        except (aiohttp.ClientError, TimeoutError) as e:
            raise OpFailed(str(e)) from None
        found = resp.status == 200
        return ReadResult((body["value"],) if found else (), None, found)

    async def put(self, key, value, context=None, *, w=None, pw=None, timeout=None):
        try:
            async with self._session().put(f"{self.url}/kv/{key}", json={"value": value}) as resp:
                await resp.read()
        except aiohttp.ClientConnectorError as e:
            raise OpFailed(str(e)) from None
        except (aiohttp.ClientError, TimeoutError) as e:
            raise OpIndeterminate(str(e)) from None
        return WriteResult(None)

    async def delete(self, key, context=None, *, w=None, pw=None, timeout=None):
        raise OpFailed("tinykv has no delete")

    async def health(self):
        return True

    async def peers_down(self):
        return []

    async def pending_handoffs(self):
        return 0

    async def close(self):
        if self._http is not None:
            await self._http.close()


class TinyKVTarget:
    name = "tinykv"
    capabilities = frozenset()
    admin = TinyKVAdmin()
    ports_per_node = 1
    node_packages = ("tinykv",)
    system_packages = ()

    def resolve_settings(self, given, nodes):
        if given:
            raise TargetError(f"tinykv has no settings, got {', '.join(sorted(given))}")
        return {}

    def summary(self, settings):
        return "tinykv (no replication)"

    def check_installed(self):
        pass

    def node_command(self, node, host, port, data_dir, peers, settings, python="python3"):
        return [python, "-m", "tinykv.node", host, str(port)]

    def client(self, node, url, *, timeout, settings):
        return TinyKVClient(node, url, timeout)
