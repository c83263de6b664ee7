"""Audio-visual emotion recognition: HiCMAE pre-training (``hicmae``, ``pretrain``), emotion fine-tuning
and the study (``finetune``, ``evaluate``), the emotion job (``emotion``). Files are read by the shared
``maskworks.core.io`` readers; faces are found with MediaPipe (``faces``)."""
