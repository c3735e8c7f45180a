declare module "qrcode-terminal" {
  const qrcode: unknown;
  export default qrcode;
}
