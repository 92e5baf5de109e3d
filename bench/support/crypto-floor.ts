import { execFileSync } from "node:child_process";
import { createCipheriv, randomBytes } from "node:crypto";

/** TLS's largest record: what a bulk transfer encrypts at a time. */
const RECORD_BYTES = 16 * 1024;
const LOOP_MS = 1000;

/**
 * The raw crypto limit of this machine for one AEAD (e.g. `aes-256-gcm`), in
 * GB/s per core (1 GB = 1e9 bytes): `openssl speed -evp` on 16 KiB blocks, and
 * Node's own cipher loop (one cipher object per 16 KiB record, as a TLS
 * record layer would use), charged by this process's CPU time.
 */
export function cryptoFloor(cipher: "aes-128-gcm" | "aes-256-gcm"): { openssl: number; node: number } {
  const out = execFileSync("openssl", ["speed", "-evp", cipher, "-bytes", String(RECORD_BYTES), "-seconds", "1"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  // The last line: "<NAME>  <n>k" in 1000s of bytes per second.
  const kbps = Number(/([\d.]+)k\s*$/.exec(out.trim())?.[1] ?? NaN);
  const key = randomBytes(cipher.includes("256") ? 32 : 16);
  const record = randomBytes(RECORD_BYTES);
  // Per-record nonces, as TLS 1.3 derives them from the record number.
  const nonce = Buffer.alloc(12);
  let bytes = 0;
  const cpuBefore = process.cpuUsage();
  const until = Date.now() + LOOP_MS;
  while (Date.now() < until) {
    nonce.writeUInt32BE(bytes / RECORD_BYTES, 8);
    const c = createCipheriv(cipher, key, nonce);
    c.update(record);
    c.final();
    c.getAuthTag();
    bytes += RECORD_BYTES;
  }
  const cpu = process.cpuUsage(cpuBefore);
  return { openssl: (kbps * 1e3) / 1e9, node: bytes / ((cpu.user + cpu.system) / 1e6) / 1e9 };
}
