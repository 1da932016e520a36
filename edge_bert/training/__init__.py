"""Host side: ``finetune`` and ``distill`` on the user's data (torch). Students, losses, data and the loop."""
