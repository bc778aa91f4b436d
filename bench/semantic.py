"""The semantic cache's threshold, measured: cosine of labelled pairs of questions with the local model.

    python bench/semantic.py

Each pair is a question a cache has answered and a later one, labelled 1 when the stored answer answers
it (a paraphrase) and 0 when it does not (a negation, an antonym, another subject). For each threshold:
how many paraphrases hit (recall) and how many wrong answers would be served (false hits), without and
with the negation check of gateway/semantic.py. The local model is WordLlama (the `semantic` extra); an
LLM's embeddings (cache.embedding) cannot be measured offline.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.semantic import LocalEmbedder, polarity

PAIRS = [
    ("What is the capital of France?", "Tell me the capital of France, please.", 1),
    ("What is the capital of France?", "Which city is the capital of France?", 1),
    ("How do I reverse a list in Python?", "How can I reverse a Python list?", 1),
    ("Summarize the plot of Hamlet.", "Give me a summary of Hamlet's plot.", 1),
    ("What is the boiling point of water?", "At what temperature does water boil?", 1),
    ("Translate 'good morning' into Spanish.", "How do you say 'good morning' in Spanish?", 1),
    ("What are the benefits of exercise?", "What are the benefits of exercising?", 1),
    ("Explain photosynthesis simply.", "Explain photosynthesis in simple terms.", 1),
    ("What is the capital of France?", "What is not the capital of France?", 0),
    ("Should I buy this stock?", "Should I not buy this stock?", 0),
    ("Is it safe to drink tap water?", "Is it not safe to drink tap water?", 0),
    ("Why can't I log in?", "Why can I log in?", 0),
    ("Is coffee good for your health?", "Is coffee bad for your health?", 0),
    ("How do I reverse a list in Python?", "How do I sort a list in Python?", 0),
    ("What is the capital of France?", "What is the capital of Germany?", 0),
    ("Write a poem about the sea.", "Write a poem about the mountains.", 0),
]
THRESHOLDS = (0.80, 0.85, 0.90, 0.95, 0.98)


async def main() -> None:
    embedder = LocalEmbedder()
    rows = []
    for stored, asked, label in PAIRS:
        a, b = await embedder.embed(f"user: {stored}"), await embedder.embed(f"user: {asked}")
        rows.append((float(a @ b), label, polarity(stored) == polarity(asked), stored, asked))
    print("| cosine | label | same negations | stored | asked |\n|---|---|---|---|---|")
    for cosine, label, same, stored, asked in rows:
        print(f"| {cosine:.3f} | {'paraphrase' if label else 'different'} | {same} | {stored} | {asked} |")
    paraphrases = sum(1 for r in rows if r[1])
    print("\n| threshold | paraphrases hit | false hits, cosine only | false hits, with the negation check |")
    print("|---|---|---|---|")
    for threshold in THRESHOLDS:
        hits = sum(1 for c, label, same, *_ in rows if label and c >= threshold and same)
        false_plain = sum(1 for c, label, *_ in rows if not label and c >= threshold)
        false_checked = sum(1 for c, label, same, *_ in rows if not label and c >= threshold and same)
        print(f"| {threshold:.2f} | {hits} of {paraphrases} | {false_plain} | {false_checked} |")


if __name__ == "__main__":
    asyncio.run(main())
