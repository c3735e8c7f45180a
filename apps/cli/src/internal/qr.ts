// qrcode-terminal ships no types; this is the one function the CLI uses.
import qrcodeTerminal from "qrcode-terminal";

interface QrcodeTerminal {
  generate(text: string, options: { small: boolean }, done: (qr: string) => void): void;
}

/** The link URI as a QR code drawn with block characters, for a terminal. */
export function renderQr(text: string): string {
  let out = "";
  (qrcodeTerminal as QrcodeTerminal).generate(text, { small: true }, (qr) => (out = qr));
  return out;
}
