import { setDefaultTimeout } from "bun:test";

// Tests spawn real Python workers; importing torch alone takes seconds on a 2-core machine.
setDefaultTimeout(120_000);
