from pydantic import BaseModel


class Input(BaseModel):
    zip_code: str | None = "00000"


class Output(BaseModel):
    score: float
