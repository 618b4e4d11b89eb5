/**
 * Which devices a run uses: `auto` takes every visible NVIDIA GPU (per `nvidia-smi`, narrowed by
 * CUDA_VISIBLE_DEVICES), or the CPU when there is none. Each GPU worker sees exactly one GPU.
 */
import { OptionsError } from "../errors.ts";

export interface DeviceSlot {
  /** Worker tag, e.g. `cuda:0` or `cpu`. */
  name: string;
  kind: "cpu" | "cuda";
  /** Value of CUDA_VISIBLE_DEVICES for this worker (GPU index or UUID); absent for CPU. */
  visible?: string;
  label: string;
}

export interface GpuInfo {
  index: string;
  name: string;
  memoryMiB: number;
}

/** GPUs per nvidia-smi; empty when it is missing or fails. */
export function listGpus(): GpuInfo[] {
  try {
    const r = Bun.spawnSync(["nvidia-smi", "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"], {
      stdout: "pipe",
      stderr: "ignore",
    });
    if (r.exitCode !== 0) return [];
    return r.stdout
      .toString()
      .trim()
      .split("\n")
      .filter(Boolean)
      .map((line) => {
        const [index = "", name = "", mem = "0"] = line.split(",").map((s) => s.trim());
        return { index, name, memoryMiB: Number(mem) };
      });
  } catch {
    return [];
  }
}

/**
 * Turn `--devices` into worker slots. Pure: the GPU list (`listGpus()`) and `visibleEnv` are
 * passed in, so tests give fake ones. `visibleEnv` is CUDA_VISIBLE_DEVICES as the user set it
 * (indices, or `GPU-`/`MIG-` UUIDs); entries that name no listed GPU (e.g. `-1`) are dropped, and
 * indices given to --devices count within what is left, as CUDA itself would count them.
 * Each index may be given once: two workers on one GPU would share its memory and its name.
 */
export function resolveDevices(devices: "auto" | "cpu" | number[], gpus: GpuInfo[], visibleEnv: string | undefined): DeviceSlot[] {
  if (devices === "cpu") return [{ name: "cpu", kind: "cpu", label: "CPU" }];
  let visible = gpus.map((g) => g.index);
  if (visibleEnv !== undefined) {
    const allowed = visibleEnv.split(",").map((s) => s.trim()).filter(Boolean);
    visible = allowed.filter((a) => gpus.some((g) => g.index === a) || a.startsWith("GPU-") || a.startsWith("MIG-"));
  }
  const label = (id: string) => gpus.find((g) => g.index === id)?.name ?? id;
  if (devices === "auto") {
    if (!visible.length) return [{ name: "cpu", kind: "cpu", label: "CPU" }];
    return visible.map((v, i) => ({ name: `cuda:${i}`, kind: "cuda", visible: v, label: label(v) }));
  }
  const given = `--devices ${devices.join(",")}`;
  const twice = devices.find((i, k) => devices.indexOf(i) !== k);
  if (twice !== undefined) throw new OptionsError(`${given}: GPU ${twice} is listed twice`, "give each GPU index once; each GPU gets one worker");
  const within = visibleEnv === undefined ? "" : `, counted within CUDA_VISIBLE_DEVICES="${visibleEnv}"`;
  return devices.map((i) => {
    const v = visible[i];
    if (v === undefined) {
      throw new OptionsError(
        `${given}: GPU ${i} is not visible (${visible.length} visible${within})`,
        visible.length ? `use indices 0..${visible.length - 1}, or --devices auto` : "no GPU found: use --devices cpu",
      );
    }
    return { name: `cuda:${i}`, kind: "cuda" as const, visible: v, label: label(v) };
  });
}
