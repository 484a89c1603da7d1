/**
 * The attacker of the flood benchmark, in a process of its own (its sockets
 * and CPU are not the measuring process's): `idle <url> <count> <addr,...>`
 * opens `count` idle HTTP/2 connections (preface and an empty SETTINGS frame,
 * then nothing) spread over the local addresses; `streams <url> <count>
 * <connections>` opens `count` unauthenticated Health/Watch streams over that
 * many connections. It prints one JSON line when the flood is in place
 * ({connected, closed} or {open, refused}), holds it until its stdin closes,
 * then lets go and exits. Loopback only.
 */
import { grpcFrame, idleFlood, streamFlood } from "../test/support/attack.js";

const [mode, url, countText, extra] = process.argv.slice(2);
const count = Number(countText);
if (url === undefined || !/^http:\/\/127\.0\.0\.1:\d+$/.test(url)) throw new Error("flood-client attacks loopback only");

const held = new Promise<void>((resolve) => {
  process.stdin.resume();
  process.stdin.once("end", resolve);
  process.stdin.once("close", resolve);
});

if (mode === "idle") {
  const addresses = (extra ?? "127.0.0.2").split(",");
  const per = Math.ceil(count / addresses.length);
  const floods = await Promise.all(addresses.map((address, i) => idleFlood(url, Math.min(per, count - i * per), address)));
  // The server refuses some at once: let those closes arrive before reporting.
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const connected = floods.reduce((n, f) => n + f.connected(), 0);
  const closed = floods.reduce((n, f) => n + f.closed(), 0);
  process.stdout.write(JSON.stringify({ connected, closed, held: connected - closed }) + "\n");
  await held;
  for (const flood of floods) flood.destroy();
} else if (mode === "streams") {
  const connections = Number(extra ?? "4");
  const flood = await streamFlood(url, {
    path: "/grpc.health.v1.Health/Watch",
    body: grpcFrame(new Uint8Array(0)),
    end: true,
    connections,
    perConnection: Math.ceil(count / connections),
  });
  const settled = await flood.settled(60_000);
  const refused = [...flood.statuses().values()].reduce((n, v) => n + v, 0);
  process.stdout.write(JSON.stringify({ open: flood.open(), refused, settled, statuses: Object.fromEntries(flood.statuses()) }) + "\n");
  await held;
  await flood.close();
} else {
  throw new Error(`unknown mode ${String(mode)}`);
}
process.exit(0);
