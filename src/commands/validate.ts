/** `embed validate INPUT...`: prove the fast path against an fp32 reference on the same weights. */
import { defineCommand } from "citty";
import { ExitCode } from "../errors.ts";
import { log } from "../log.ts";
import { DEFAULT_THRESHOLDS } from "../validate/metrics.ts";
import { MAX_SAMPLE, validate } from "../validate/validate.ts";
import { renderReport } from "../validate/report.ts";
import { renderHtml } from "../validate/html.ts";
import { checkReportPath, writeAtomic } from "../validate/output.ts";
import { sharedArgs, sharedOptions } from "./args.ts";
import { emit, fail } from "./report.ts";

export default defineCommand({
  meta: {
    name: "validate",
    description: `Embed records with the production path and with an fp32 one-at-a-time reference on the same weights; report the differences per length bin and fail below thresholds.

Examples:
  embed validate proteins.fasta --model esm2_t33_650M_UR50D --sample 500
  embed validate reads.faa.gz --precision bf16 --report validate.json
  embed validate x.fasta --per-residue --min-cosine 0.9995
  embed validate x.fasta --sample 2000 --html validate.html`,
  },
  args: {
    ...sharedArgs,
    sample: { type: "string", description: `validate at most N records (1 ≤ N ≤ ${MAX_SAMPLE.toLocaleString("en")}), stratified by length (default: all, up to ${MAX_SAMPLE.toLocaleString("en")})` },
    layers: { type: "string", description: "the layer to check (fair-esm style)", default: "-1" },
    "per-residue": { type: "boolean", description: "also compare per-residue vectors", default: false },
    contamination: { type: "string", description: "records checked alone vs packed (≥ 1)", default: "8" },
    "min-cosine": { type: "string", description: `every record's pooled cosine (default ${DEFAULT_THRESHOLDS.minCosine})` },
    "median-cosine": { type: "string", description: `median pooled cosine (default ${DEFAULT_THRESHOLDS.medianCosine})` },
    "contamination-cosine": { type: "string", description: `alone vs packed cosine (default ${DEFAULT_THRESHOLDS.contaminationCosine})` },
    "max-rel-l2": { type: "string", description: "every record's relative L2 error at most this (off by default; 1e-5 suits fp32)" },
    report: { type: "string", description: "write the report as JSON to this file, with every record's values (and the table to FILE.txt)" },
    html: { type: "string", description: "write the report as one self-contained HTML page with charts to this file", valueHint: "FILE" },
    verbose: { type: "boolean", default: false, description: "debug logs" },
  },
  async run({ args }) {
    if (args.verbose) log.level = 4;
    try {
      // Checked before the run: a bad path should not cost a reference run.
      const outputs: [string, string][] = [];
      if (args.report) outputs.push(["--report", args.report], ["--report", `${args.report}.txt`]);
      if (args.html) outputs.push(["--html", args.html]);
      for (const [flag, path] of outputs) checkReportPath(flag, path, args._);
      const report = await validate({
        ...sharedOptions(args),
        // Numbers stay strings here: validate() checks their ranges and names the flag.
        sample: args.sample,
        layers: args.layers,
        perResidue: args["per-residue"],
        contamination: args.contamination,
        thresholds: {
          minCosine: args["min-cosine"],
          medianCosine: args["median-cosine"],
          contaminationCosine: args["contamination-cosine"],
          maxRelL2: args["max-rel-l2"],
        },
      });
      const text = renderReport(report);
      if (args.report) {
        writeAtomic("--report", args.report, JSON.stringify(report, null, 2) + "\n");
        writeAtomic("--report", `${args.report}.txt`, text + "\n");
        log.info(`report written to ${args.report} (+ .txt)`);
      }
      if (args.html) {
        writeAtomic("--html", args.html, renderHtml(report));
        log.info(`HTML report written to ${args.html}`);
      }
      if (process.stdout.isTTY) process.stdout.write(text + "\n");
      else {
        process.stderr.write(text + "\n");
        emit(report);
      }
      process.exit(report.ok ? ExitCode.ok : ExitCode.validationFailed);
    } catch (e) {
      fail(e, args.verbose);
    }
  },
});
