/**
 * The Lua scripts, each prefixed with the shared prelude so every behaviour is
 * written once. The sources live in TypeScript modules (lua/*.ts) rather than
 * .lua files so the compiled build carries them without a copy step.
 *
 * ioredis sends EVALSHA and falls back to EVAL on NOSCRIPT (and sends EVAL first
 * on every new connection), so a restarted, empty Redis needs no extra step.
 */
import { claimLua } from "./lua/claim.js";
import { clearDataLua } from "./lua/clear-data.js";
import { closeLua } from "./lua/close.js";
import { createLua } from "./lua/create.js";
import { deleteDataLua } from "./lua/delete-data.js";
import { expireDueLua } from "./lua/expire-due.js";
import { extendLua } from "./lua/extend.js";
import { getDataLua } from "./lua/get-data.js";
import { getLua } from "./lua/get.js";
import { listDataLua } from "./lua/list-data.js";
import { listLua } from "./lua/list.js";
import { logPositionLua } from "./lua/log-position.js";
import { nextDueLua } from "./lua/next-due.js";
import { preludeLua } from "./lua/prelude.js";
import { readEventsLua } from "./lua/read-events.js";
import { setDataLua } from "./lua/set-data.js";
import { updateLua } from "./lua/update.js";

const bodies = {
  create: createLua,
  claim: claimLua,
  get: getLua,
  update: updateLua,
  extend: extendLua,
  close: closeLua,
  list: listLua,
  setData: setDataLua,
  getData: getDataLua,
  deleteData: deleteDataLua,
  listData: listDataLua,
  clearData: clearDataLua,
  expireDue: expireDueLua,
  nextDue: nextDueLua,
  readEvents: readEventsLua,
  logPosition: logPositionLua,
} as const;

export type ScriptName = keyof typeof bodies;

/**
 * The full source of every script: prelude + body, the body run as a function
 * so that whatever it returns gets the common reply header first:
 *
 *   { NOW, n, <n lazily expired records>, <the body's reply...> }
 *
 * NOW is the script's clock (when its writes and events happened); the records
 * are the sessions load_session archived as expired on the way (LAZY in the
 * prelude), whichever operation met them. RedisStore.script strips the header.
 */
export function scriptSources(): Record<ScriptName, string> {
  const out = {} as Record<ScriptName, string>;
  for (const name of Object.keys(bodies) as ScriptName[]) {
    out[name] = `${preludeLua}\n-- ${name}\nlocal reply = (function()\n${bodies[name]}\nend)()\n${REPLY_HEADER}`;
  }
  return out;
}

/** Strings in front of every reply: NOW and the count of lazily expired records. */
export const REPLY_HEADER_WIDTH = 2;

const REPLY_HEADER = String.raw`local head = { istr(NOW), istr(#LAZY / RECORD_WIDTH) }
append(head, LAZY)
return append(head, reply)`;
