"""Helpers the tests share: tiny models built on the fly, a fake OpenAI server, a user reward."""
