/**
 * The event hub's delivery rules that the watch tests cannot pin down by
 * timing alone: dispatch in slices with event-loop turns between them (a
 * watcher registered during a pause gets the event once), direct delivery
 * only while a watcher's queue is empty (nothing overtakes a queued event),
 * and a direct delivery that throws falls back to the queue without
 * disturbing the others; and a hub given `idleMs` pauses with nobody to read
 * for and resumes for a watcher (at the log's end after `awake()`) or a
 * listener. On a real MemoryStore log.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { EventHub, type HubSubscription } from "../src/streaming/event-hub.js";
import { MemoryStore } from "../src/store/memory/memory-store.js";
import type { StoredEvent } from "../src/store/store.js";
import { CONFORMANCE_LIMITS } from "./conformance/store-conformance.js";

const input = { tenant: "t", userId: "u", dataSource: "d", accessLevel: "write", ttlMs: 60_000, metadata: "{}", requestId: "" } as const;

/** Everything a subscription received, queued or direct, in order. */
function drain(sub: HubSubscription): StoredEvent[] {
  const out: StoredEvent[] = [];
  for (let e = sub.queue.shift(); e !== undefined; e = sub.queue.shift()) out.push(e);
  return out;
}

async function until(what: string, condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

describe("EventHub", () => {
  let store: MemoryStore;
  let hub: EventHub;
  before(async () => {
    store = new MemoryStore({ limits: CONFORMANCE_LIMITS });
    // Two watchers per slice: a pause after every second one.
    hub = new EventHub({ store, blockMs: 50, dispatchSlice: 2 });
    await hub.start();
  });
  after(async () => {
    await hub.stop();
    await store.dispose();
  });

  it("offers each event to every watcher, in order, across slices; one registered during a pause gets it once", async () => {
    const all = () => true;
    const subs = Array.from({ length: 7 }, () => hub.subscribe("t", all, 100));
    const direct: StoredEvent[][] = subs.map(() => []);
    let late: HubSubscription | undefined;
    let positionAtLate = "";
    // Every watcher takes events directly (the common case); the first one, at the first event, schedules
    // a registration that runs while the dispatch pauses after the second watcher (setImmediate callbacks
    // run in order).
    subs.forEach((sub, i) =>
      sub.deliverDirectly((event) => {
        direct[i]?.push(event);
        if (i === 0 && late === undefined && positionAtLate === "") {
          positionAtLate = "scheduled";
          setImmediate(() => {
            positionAtLate = hub.position;
            late = hub.subscribe("t", all, 100);
          });
        }
        return true;
      }),
    );
    const before = hub.position;
    const first = await store.create(input);
    const second = await store.create(input);
    await until("both events at the last watcher", () => (direct[6]?.length ?? 0) >= 2 && late !== undefined);
    // The late watcher comes after the last one in the hub's order: let the dispatch finish.
    await new Promise((resolve) => setTimeout(resolve, 50));
    const ids = (events: StoredEvent[]): string[] => events.map((e) => e.session.sessionId);
    const expected = [first.session.sessionId, second.session.sessionId];
    for (const [i, sub] of subs.entries()) {
      assert.deepEqual(ids(direct[i] ?? []), expected, `watcher ${i}, in order`);
      assert.equal(sub.queue.size, 0, `watcher ${i}: nothing queued`);
    }
    assert.ok(late !== undefined);
    assert.equal(positionAtLate, before, "registered before the first event's dispatch ended");
    assert.deepEqual(ids(drain(late)), expected, "the late watcher: the event being dispatched, once, then the next");
    for (const sub of [...subs, late]) sub.close();
    assert.equal(hub.subscriberCount, 0);
  });

  it("delivers directly only while the queue is empty: a refused event is queued and nothing overtakes it", async () => {
    const sub = hub.subscribe("t", () => true, 100);
    const offered: string[] = [];
    let accept = false;
    sub.deliverDirectly((event) => {
      offered.push(event.id);
      return accept;
    });
    const first = await store.create(input);
    await until("the first event queued", () => sub.queue.size === 1);
    accept = true;
    const second = await store.create(input);
    await until("the second event queued", () => sub.queue.size === 2);
    assert.equal(offered.length, 1, "the second event was not offered while the first waited in the queue");
    assert.deepEqual(
      drain(sub).map((e) => e.session.sessionId),
      [first.session.sessionId, second.session.sessionId],
    );
    const third = await store.create(input);
    await until("the third event offered", () => offered.length === 2);
    assert.equal(sub.queue.size, 0, "taken directly once the queue was empty");
    assert.equal(offered.length, 2);
    void third;
    sub.close();
  });

  it("a direct delivery that throws queues the event and leaves the other watchers alone", async () => {
    const failing = hub.subscribe("t", () => true, 100);
    failing.deliverDirectly(() => {
      throw new Error("cannot decode");
    });
    const other = hub.subscribe("t", () => true, 100);
    const event = await store.create(input);
    await until("both have the event", () => failing.queue.size === 1 && other.queue.size === 1);
    assert.equal(failing.queue.shift()?.session.sessionId, event.session.sessionId);
    assert.equal(other.queue.shift()?.session.sessionId, event.session.sessionId);
    failing.close();
    other.close();
  });

  it("watchers with one filter key share one match per event; one joining the group during a pause gets the event once; other keys and tenants stay apart", async () => {
    // The earlier tests' last dispatch over: a watcher registered during one would be offered its event.
    const last = await store.lastEventId();
    await until("the hub idle", () => hub.position === last);
    let matched = 0;
    const mine = (event: StoredEvent): boolean => {
      matched += 1;
      return event.session.userId === "u";
    };
    // Five of one group: the pauses (every second watcher) fall inside it.
    const group = Array.from({ length: 5 }, () => hub.subscribe("t", mine, 100, () => false, "user u"));
    const elsewhere = hub.subscribe("t", (event) => event.session.userId === "v", 100, () => false, "user v");
    const otherTenant = hub.subscribe("t2", () => true, 100, () => false, "user u");
    let late: HubSubscription | undefined;
    group.forEach((sub, i) =>
      sub.deliverDirectly(() => {
        // At the first watcher: a registration in the same group that runs while the dispatch pauses, after the group's first slice.
        if (i === 0 && late === undefined) setImmediate(() => (late ??= hub.subscribe("t", mine, 100, () => false, "user u")));
        return false;
      }),
    );
    const first = await store.create(input);
    await until("the event at the whole group", () => group.every((sub) => sub.queue.size === 1) && late !== undefined);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(matched, 2, "one match for the group's event, one for the late watcher's registration");
    assert.ok(late !== undefined);
    assert.deepEqual(drain(late).map((e) => e.session.sessionId), [first.session.sessionId], "the late watcher: the event once");
    const second = await store.create(input);
    await until("the second event at the group and the late watcher", () => group.every((sub) => sub.queue.size === 2) && late?.queue.size === 1);
    assert.equal(matched, 3, "the late watcher joined the group: still one match per event");
    assert.deepEqual(drain(late).map((e) => e.session.sessionId), [second.session.sessionId]);
    assert.equal(elsewhere.queue.size, 0, "another filter of the tenant: nothing");
    assert.equal(otherTenant.queue.size, 0, "the same key in another tenant: nothing");
    for (const sub of [...group, late, elsewhere, otherTenant]) sub.close();
    assert.equal(hub.subscriberCount, 0);
  });
});

describe("EventHub with idleMs", () => {
  let store: MemoryStore;
  let hub: EventHub;
  before(async () => {
    store = new MemoryStore({ limits: CONFORMANCE_LIMITS });
    hub = new EventHub({ store, blockMs: 20, idleMs: 60 });
    await hub.start();
  });
  after(async () => {
    await hub.stop();
    await store.dispose();
  });

  it("pauses with no watcher and no listener; awake() resumes at the log's end, so a watcher gets what follows only", async () => {
    await until("paused", () => hub.paused);
    const atPause = hub.position;
    await store.create(input);
    const end = await store.lastEventId();
    assert.notEqual(end, atPause, "the log moved on");
    await new Promise((resolve) => setTimeout(resolve, 60));
    assert.equal(hub.position, atPause, "nothing read while paused");
    assert.equal(hub.tenantPosition("t"), undefined, "no tenant position from before the pause is shown");
    await hub.awake();
    assert.equal(hub.paused, false);
    assert.equal(hub.position, end, "resumed at the log's end");
    const sub = hub.subscribe("t", () => true, 100);
    const next = await store.create(input);
    await until("the next event queued", () => sub.queue.size === 1);
    await new Promise((resolve) => setTimeout(resolve, 60));
    assert.deepEqual(drain(sub).map((e) => e.session.sessionId), [next.session.sessionId], "only the event after the registration");
    assert.equal(hub.paused, false, "a watcher keeps it reading");
    sub.close();
    await until("paused again once the watcher left", () => hub.paused);
  });

  it("a watcher registered without awake() gets the events since the pause; a listener resumes it and keeps it reading", async () => {
    await until("paused", () => hub.paused);
    const missed = await store.create(input);
    const sub = hub.subscribe("t", () => true, 100);
    assert.equal(hub.paused, false);
    await until("the event written while paused", () => sub.queue.size === 1);
    assert.equal(sub.queue.shift()?.session.sessionId, missed.session.sessionId);
    sub.close();
    await until("paused again", () => hub.paused);

    const heard: string[] = [];
    const remove = hub.addListener((event) => heard.push(event.sessionId));
    assert.equal(hub.paused, false, "a listener resumes the reader");
    const created = await store.create(input);
    await until("the listener hears the new event", () => heard.includes(created.session.sessionId));
    await new Promise((resolve) => setTimeout(resolve, 150));
    assert.equal(hub.paused, false, "a listener keeps it reading");
    remove();
    await until("paused once the listener left", () => hub.paused);
  });

  it("stop() ends a paused hub", async () => {
    const other = new EventHub({ store, blockMs: 20, idleMs: 10 });
    await other.start();
    await until("paused", () => other.paused);
    await other.stop();
    assert.equal(other.running, false);
  });
});
