"""rationalizer.training: data, teachers, rewards and trainers (needs the ``train`` extra)."""
