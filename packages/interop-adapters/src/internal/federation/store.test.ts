import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { openSqliteFederationStore } from "./store.ts";

const path = () => join(mkdtempSync(join(tmpdir(), "pairwise-interop-")), "interop.db");

describe("SQLite federation store", () => {
  it("keeps third-party chats off by default and stores changes", () => {
    const s = openSqliteFederationStore(path());
    expect(s.getPrivacy("alice")).toEqual({ providers: [], groups: "contacts" });
    s.setPrivacy("alice", { providers: ["provb", "provb", "a"], groups: "nobody" });
    expect(s.getPrivacy("alice")).toEqual({ providers: ["a", "provb"], groups: "nobody" });
    s.addContact("alice", "bob@provb");
    s.addContact("alice", "bob@provb");
    expect(s.isContact("alice", "bob@provb")).toBe(true);
    expect(s.isContact("bob", "alice@prova")).toBe(false);
    s.close();
  });

  it("keeps the outbound queue per partner, in order, across a reopen", () => {
    const p = path();
    let s = openSqliteFederationStore(p);
    s.enqueueOutbound("provb", new Uint8Array([1]), 1);
    s.enqueueOutbound("provc", new Uint8Array([9]), 1);
    s.enqueueOutbound("provb", new Uint8Array([2]), 2);
    s.close();
    s = openSqliteFederationStore(p);
    const items = s.listOutbound("provb", 10);
    expect(items.map((i) => [...i.body])).toEqual([[1], [2]]);
    s.removeOutbound(items[0]!.seq);
    expect(s.countOutbound("provb")).toBe(1);
    expect(s.countOutbound("provc")).toBe(1);
    s.close();
  });

  it("remembers the partner hosting a group across a reopen; the first one told wins", () => {
    const p = path();
    let s = openSqliteFederationStore(p);
    expect(s.groupHost("g1234567")).toBeUndefined();
    s.setGroupHost("g1234567", "prova");
    s.setGroupHost("g1234567", "provc");
    s.close();
    s = openSqliteFederationStore(p);
    expect(s.groupHost("g1234567")).toBe("prova");
    expect(s.groupHost("other123")).toBeUndefined();
    s.close();
  });
});
