/**
 * The NumPy .npy v1.0 header, so that stores load with `np.load(path, mmap_mode="r")` and need
 * no embed code to read. Writing the header is all embed does by hand; the rows are raw
 * little-endian bytes written in place.
 */
export type NpyDescr = "<f4" | "<f2" | "<i8";

/** The header for a C-ordered array of `shape`, padded so the data starts 64-byte aligned. */
export function npyHeader(descr: NpyDescr, shape: readonly number[]): Uint8Array {
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`;
  const dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeText}, }`;
  const unpadded = 10 + dict.length + 1;
  const total = Math.ceil(unpadded / 64) * 64;
  const text = dict + " ".repeat(total - unpadded) + "\n";
  const out = new Uint8Array(total);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0], 0); // \x93NUMPY v1.0
  new DataView(out.buffer).setUint16(8, text.length, true);
  out.set(new TextEncoder().encode(text), 10);
  return out;
}

/** The dtype and shape in a .npy header (v1–v3), or undefined when `bytes` is not one. */
export function parseNpyHeader(bytes: Uint8Array): { descr: string; shape: number[]; dataStart: number } | undefined {
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];
  if (bytes.length < 10 || magic.some((b, i) => bytes[i] !== b)) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const major = bytes[6]!;
  const [len, start] = major === 1 ? [view.getUint16(8, true), 10] : bytes.length >= 12 ? [view.getUint32(8, true), 12] : [0, 0];
  if (!start || bytes.length < start + len) return undefined;
  const text = new TextDecoder().decode(bytes.subarray(start, start + len));
  const descr = /'descr':\s*'([^']+)'/.exec(text)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(text)?.[1];
  if (descr === undefined || shapeText === undefined) return undefined;
  const shape = shapeText
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)
    .map(Number);
  return { descr, shape, dataStart: start + len };
}
