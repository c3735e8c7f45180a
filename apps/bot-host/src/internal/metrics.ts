import type { BotSnapshot, BotState } from "./bot.ts";

const STATES: readonly BotState[] = [
  "unlinked",
  "linking",
  "connected",
  "disconnected",
  "logged-out",
];

const label = (v: string) => v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");

/** The bots' figures in the Prometheus text exposition format. */
export function renderMetrics(bots: readonly BotSnapshot[]): string {
  const out: string[] = [];
  const family = (name: string, type: "gauge" | "counter", help: string, rows: string[]) => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...rows);
  };
  family("pairwise_bot_host_bots", "gauge", "Bots configured in this host.", [
    `pairwise_bot_host_bots ${bots.length}`,
  ]);
  family(
    "pairwise_bot_state",
    "gauge",
    "1 for the state each bot is in.",
    bots.flatMap((b) =>
      STATES.map(
        (s) => `pairwise_bot_state{bot="${label(b.name)}",state="${s}"} ${b.state === s ? 1 : 0}`,
      ),
    ),
  );
  const counter = (name: string, help: string, pick: (b: BotSnapshot) => number) =>
    family(
      name,
      "counter",
      help,
      bots.map((b) => `${name}{bot="${label(b.name)}"} ${pick(b)}`),
    );
  counter(
    "pairwise_bot_messages_received_total",
    "Incoming messages queued for handling.",
    (b) => b.counters.received,
  );
  counter(
    "pairwise_bot_messages_handled_total",
    "Incoming messages whose handling completed.",
    (b) => b.counters.handled,
  );
  counter(
    "pairwise_bot_messages_sent_total",
    "Messages and reactions sent.",
    (b) => b.counters.sent,
  );
  counter(
    "pairwise_bot_handler_errors_total",
    "Errors thrown by plugin middleware.",
    (b) => b.counters.errors,
  );
  family(
    "pairwise_bot_queued_messages",
    "gauge",
    "Messages queued or being handled.",
    bots.map((b) => `pairwise_bot_queued_messages{bot="${label(b.name)}"} ${b.queued}`),
  );
  family(
    "pairwise_bot_last_message_timestamp_seconds",
    "gauge",
    "When the bot last completed handling a message.",
    bots.map(
      (b) =>
        `pairwise_bot_last_message_timestamp_seconds{bot="${label(b.name)}"} ${(b.lastMessageAt ?? 0) / 1000}`,
    ),
  );
  return `${out.join("\n")}\n`;
}
