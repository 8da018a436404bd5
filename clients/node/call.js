// Calls one method of Postmark's Node.js client against our API and prints the outcome as JSON.
// Usage: node call.js <base-url> <Server|Account> <token> <method> [json-args...]
// Prints {"ok": true, "result": ...} or {"ok": false, "name", "code", "statusCode", "message"}.
const postmark = require("postmark");

async function main() {
  const [base, kind, token, method, ...rawArgs] = process.argv.slice(2);
  const url = new URL(base);
  const options = { useHttps: url.protocol === "https:", requestHost: url.host, timeout: 30 };
  const Client = kind === "Account" ? postmark.AccountClient : postmark.ServerClient;
  const client = new Client(token, options);
  const args = rawArgs.map((arg) => JSON.parse(arg));
  try {
    const result = await client[method](...args);
    process.stdout.write(JSON.stringify({ ok: true, result }));
  } catch (error) {
    process.stdout.write(JSON.stringify({
      ok: false, name: error.name, code: error.code, statusCode: error.statusCode,
      message: error.message,
    }));
  }
}

main();
