// Scores token sequences with the real llama.cpp (npm's node-llama-cpp, its prebuilt CPU binary), for the tests
// that check fbquant's GGUF export against it. Reads one JSON request on stdin:
//   {"model": "m.gguf", "lora": "branch.gguf" | null, "context": 256,
//    "sequences": [[ids...], ...], "greedy": {"prompt": [ids...], "tokens": N} | null, "texts": ["..."]}
// and prints {"logprobs": [[log p(s[i+1] | s[..i]) for i < len−1], ...], "argmax": [[...], ...],
// "greedy": [ids...], "timing": {...}, "tokenized": [[ids of each text, no BOS], ...]}: teacher-forced next-token log-probabilities, the greedy continuation,
// and its speed (prompt + first token, then tokens/s of the remaining decode steps).
import {getLlama} from "node-llama-cpp";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const request = JSON.parse(Buffer.concat(chunks).toString("utf8"));

const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const model = await llama.loadModel({modelPath: request.model});
const lora = request.lora ? {adapters: [{filePath: request.lora, scale: 1.0}]} : undefined;
const context = await model.createContext({contextSize: request.context ?? 256, sequences: 1, threads: 2, lora});
const sequence = context.getSequence();

const logprobs = [], argmax = [];
for (const tokens of request.sequences) {
  await sequence.clearHistory();
  const input = tokens.map((token) => [token, {generateNext: {probabilities: true}}]);
  const results = await sequence.controlledEvaluate(input);
  const scores = [], best = [];
  for (let i = 0; i + 1 < tokens.length; i++) {
    const probabilities = results[i].next.probabilities;
    scores.push(Math.log(probabilities.get(tokens[i + 1]) ?? 0));
    best.push(probabilities.entries().next().value[0]);
  }
  logprobs.push(scores);
  argmax.push(best);
}

let greedy = [], timing = null;
if (request.greedy) {
  await sequence.clearHistory();
  const start = performance.now();
  let first = start;
  for await (const token of sequence.evaluate(request.greedy.prompt, {temperature: 0})) {
    greedy.push(token);
    if (greedy.length === 1) first = performance.now();
    if (greedy.length >= request.greedy.tokens) break;
  }
  const end = performance.now();
  timing = {prompt_tokens: request.greedy.prompt.length, prompt_and_first_seconds: (first - start) / 1000,
            decode_steps: greedy.length - 1,
            decode_tokens_per_second: greedy.length > 1 ? (greedy.length - 1) / ((end - first) / 1000) : null};
}
const tokenized = (request.texts ?? []).map((text) => Array.from(model.tokenize(text)));
process.stdout.write(JSON.stringify({logprobs, argmax, greedy, timing, tokenized}) + "\n");
await context.dispose();
await model.dispose();
