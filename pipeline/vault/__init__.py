"""The key vault and crypto-shredding: personal data on Kafka is sealed (AES-256-GCM) with a
data key per record, kept only in the vault; an erase deletes the person's keys, so every copy
on every topic becomes unreadable at once (issue #13). See docs/erasure.md."""
