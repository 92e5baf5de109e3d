/** Bytes that matter to HTTP/1.1 framing: CR, LF, SP, colon, "0", semicolon, HTAB, comma. */
const FRAMING_BYTES = [0x0d, 0x0a, 0x20, 0x3a, 0x30, 0x3b, 0x09, 0x2c];

/** One to four random edits of an HTTP/1.1 message (replace, often with a framing byte; delete; insert; repeat a run), for seeded fuzzing. */
export function mutateHttp(input: Buffer, rand: () => number): Buffer {
  const bytes = [...input];
  const edits = 1 + Math.floor(rand() * 4);
  for (let i = 0; i < edits; i++) {
    const at = Math.floor(rand() * bytes.length);
    const op = Math.floor(rand() * 4);
    if (op === 0) bytes[at] = rand() < 0.5 ? FRAMING_BYTES[Math.floor(rand() * FRAMING_BYTES.length)]! : Math.floor(rand() * 256);
    else if (op === 1) bytes.splice(at, 1);
    else if (op === 2) bytes.splice(at, 0, Math.floor(rand() * 256));
    else bytes.splice(at, 0, ...bytes.slice(at, at + Math.floor(rand() * 16)));
  }
  return Buffer.from(bytes);
}
