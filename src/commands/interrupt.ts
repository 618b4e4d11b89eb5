/** How `embed run`, `embed extract` and `embed virnucpro` take an interrupt. */
import { InterruptedError } from "../errors.ts";
import { log } from "../log.ts";

/**
 * A signal aborted by the first SIGINT, SIGTERM or SIGHUP: the command finishes the batches in
 * flight and commits them (a rerun resumes); a second signal exits at once (130). A closed
 * terminal or ssh session (SIGHUP) is an interrupt like any other, rather than an exit at once
 * with the batches in flight lost (its default action, exit 129).
 */
export function interruptOnSignals(): AbortSignal {
  const controller = new AbortController();
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    if (++signals > 1) process.exit(130);
    log.warn(`${sig}: finishing the batches in flight and committing them (press again to exit at once)`);
    controller.abort(new InterruptedError(sig));
  };
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(sig, onSignal);
  return controller.signal;
}
